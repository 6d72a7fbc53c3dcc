"""The benchmark harness of issue 12: ``make bench`` = ``python -m bench``.

Every figure is printed beside a baseline measured in the same run on the same machine; the
ratio is the result (absolute times on a shared 2-core machine are noise). Nothing here is part
of ``make test``.
"""
