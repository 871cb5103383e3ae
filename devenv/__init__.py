"""devenv: the whole local stack with one command, on ports that never collide."""

__version__ = "0.1.0"
