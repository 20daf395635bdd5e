"""Snapshot -> text: formatting shared by ``vmtop top`` and the TUI."""
