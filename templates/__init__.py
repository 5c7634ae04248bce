"""Jinja2 prompt templates shipped with vlmdata (installed as the `vlmdata.templates` package).

A template is `<group>/<name>.j2` and is found by name (`medical/report`). See vlmdata/templates_lib.py.
"""
