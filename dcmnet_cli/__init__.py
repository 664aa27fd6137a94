"""dcmnet: a command-line DICOM networking toolkit."""

__version__ = "0.1.0"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.7781.1.0.1"
IMPLEMENTATION_VERSION_NAME = "DCMNET_010"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 match``, ``3 matches``: counts in messages read as words, never ``match(es)``."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
