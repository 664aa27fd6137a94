"""The embedded archive of `dcmnet listen`: index, matching, reconciliation."""
