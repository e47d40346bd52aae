"""blurfield: non-uniform motion blur estimation via adaptive basis decomposition."""

__version__ = "0.1.0"
