"""DIMSE layer, sans-IO (PS3.7): command set codec, status table, PDV fragmenter and assembler.

Kept empty of imports on purpose: importing a submodule must stay cheap and never pull in pydicom.
"""
