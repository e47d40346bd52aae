"""``python -m demo`` (``make demo``): the whole pipeline on built-in data, in minutes
(:mod:`demo.pipeline`).

The demo sits above both programs (docs/design.md §10): it builds shards with
``data_prep`` and runs ``blurfield`` commands, so it lives outside both packages and
neither imports it. It runs from a checkout (it reads ``conf/``), like the Makefile.
"""
