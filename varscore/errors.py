"""Typed errors. Library code raises these; only the CLI turns them into messages."""


class VarscoreError(Exception):
    """Base class for every error a user can fix. The message says what and how."""


class InputError(VarscoreError):
    """A user-supplied file or option is missing, malformed or inconsistent."""


class PluginError(VarscoreError):
    """A plugin failed to load, or two plugins registered the same name."""


class ModelNotFoundError(VarscoreError):
    """A model name or path did not resolve to a bundle."""


class BundleError(VarscoreError):
    """A model bundle is malformed or cannot be loaded."""


class NotFittedError(VarscoreError):
    """A trainable object was used before it was fitted or loaded."""
