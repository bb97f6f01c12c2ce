"""Error types the engine raises. Every message says what happened and what to do."""


class LecternError(Exception):
    """Base of every error Lectern reports to a user."""


class GGUFError(LecternError):
    """A GGUF file is malformed, truncated or unsupported. The message names the file."""


class UnsupportedModelError(LecternError):
    """A well-formed GGUF whose architecture or tensor layout the engine cannot run."""


class TokenizerError(LecternError):
    """The vocabulary metadata cannot be turned into a tokenizer, or ids are out of range."""


class TemplateError(LecternError):
    """A chat template failed to render, escaped its sandbox, or ran too long."""


class ContextOverflowError(LecternError):
    """A prompt plus its answer would not fit in the session's context window."""


class KVTypeError(LecternError, ValueError):
    """A KV cache type that is not one of inference.kv_cache.KV_TYPES."""
