"""Files in and out: VCF reading and writing, INFO text, the output guard every writer goes through, file integrity and the download guard."""
