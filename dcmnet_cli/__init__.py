"""dcmnet: a command-line DICOM networking toolkit."""

__version__ = "0.1.0"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.7781.1.0.1"
IMPLEMENTATION_VERSION_NAME = "DCMNET_010"
