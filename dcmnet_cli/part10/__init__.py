"""PS3.10/PS3.5 bytes: File Meta, the element walker, VR/UID/transfer-syntax tables, safe file naming.

Kept empty of imports on purpose: importing a submodule must stay cheap and never pull in pydicom.
"""
