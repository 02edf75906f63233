"""Query evaluation runs: confusion, per-class scores, filters and suspected label errors.

Plain pandas in, plain pandas out; the UI only displays what these modules return.
"""
