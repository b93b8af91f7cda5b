"""Shipped inside the wheel as `streamdet.assets`, for the label file; see assets/README.md."""
