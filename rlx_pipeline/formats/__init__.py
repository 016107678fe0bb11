"""File formats both sides share, on the ground floor: the native capture file (``capture_file``: line layout,
zstd frames, index, file naming) and Crypto Lake's raw tables (``lake_tables``). The capture service, the importers,
golden parsing, the simulator and the lake staging all read and write them; this package imports none of those.
"""
