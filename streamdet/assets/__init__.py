"""Data files shipped with streamdet (installed as the streamdet.assets package)."""
