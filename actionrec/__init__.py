"""The ``actionrec`` command line: one entry point for the offline and the online stage."""
