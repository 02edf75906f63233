"""The Model tab: its builder and handlers (``tab``) and the model cards it shows."""
