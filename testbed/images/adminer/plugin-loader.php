<?php
// Print a plugins-enabled/ file that loads plugin $argv[1] (used by entrypoint.sh for
// ADMINER_PLUGINS, as upstream). Plugins whose constructor needs arguments must be
// configured by mounting a file into plugins-enabled/ instead.
if ($argc !== 2 || !preg_match('~^[a-z0-9-]+$~', $argv[1])) {
	fwrite(STDERR, "usage: php plugin-loader.php PLUGIN\n");
	exit(1);
}
$name = $argv[1];
$file = __DIR__ . "/plugins/$name.php";
if (!is_readable($file)) {
	fwrite(STDERR, "Unknown plugin: $name\n");
	exit(1);
}
// Plugins are plain classes; plugin.php is not needed (it needs Adminer loaded).
$before = get_declared_classes();
require_once($file);
$classes = array_values(array_diff(get_declared_classes(), $before));
if (!$classes) {
	fwrite(STDERR, "Plugin $name declares no class\n");
	exit(1);
}
$class = $classes[0];
$constructor = (new ReflectionClass($class))->getConstructor();
if ($constructor && $constructor->getNumberOfRequiredParameters() > 0) {
	fwrite(STDERR, "Plugin $name needs constructor arguments; mount a file at /var/www/html/plugins-enabled/$name.php\n");
	exit(1);
}
echo "<?php\nrequire_once('plugins/$name.php');\n\nreturn new $class();\n";
