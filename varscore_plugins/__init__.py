"""Built-in varscore plugins. Each registers through the ``varscore`` entry-point group, as a
third-party plugin would."""
