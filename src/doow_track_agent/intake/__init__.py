"""Judging a line: parse, validate against the schema, apply policy, encode for the wire.

``events`` is the stage every source hands its lines to; ``validation`` the
JSON Schema rules (shared with the config); ``policy`` the limits beyond the
schema (sizes, secrets); ``wire`` the bytes an accepted event travels as.
"""
