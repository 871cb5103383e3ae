<?php
// Same front controller as the official adminer image: pre-fill the login form's server
// field from ADMINER_DEFAULT_SERVER (default "db") and load plugins-enabled/*.php.
namespace docker {
	function adminer_object() {
		require_once('plugins/plugin.php');

		class Adminer extends \AdminerPlugin {
			function _callParent($function, $args) {
				if ($function === 'loginForm') {
					ob_start();
					$return = \Adminer::loginForm();
					$form = ob_get_clean();

					$server = getenv('ADMINER_DEFAULT_SERVER') ?: 'db';
					echo str_replace(
						'name="auth[server]" value="" title="hostname[:port]"',
						'name="auth[server]" value="' . htmlspecialchars($server, ENT_QUOTES) . '" title="hostname[:port]"',
						$form
					);

					return $return;
				}

				return parent::_callParent($function, $args);
			}
		}

		$plugins = [];
		foreach (glob('plugins-enabled/*.php') as $plugin) {
			$plugins[] = require($plugin);
		}

		return new Adminer($plugins);
	}
}

namespace {
	if (basename($_SERVER['DOCUMENT_ROOT'] . $_SERVER['REQUEST_URI']) === 'adminer.css' && is_readable('adminer.css')) {
		header('Content-Type: text/css');
		readfile('adminer.css');
		exit;
	}

	function adminer_object() {
		return \docker\adminer_object();
	}

	require('adminer.php');
}
