"""The compression-vs-accuracy report: aggregate run records, draw figures, render Markdown and HTML."""
