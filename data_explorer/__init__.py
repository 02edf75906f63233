"""Query evaluation runs: confusion, per-class scores, filters and suspected label errors; read
runs published to the Hub; check and unpack labeled sets uploaded as .zip archives.

Plain pandas in, plain pandas out; the UI only displays what these modules return.
"""
