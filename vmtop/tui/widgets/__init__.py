"""Widgets and screens of the live TUI; each reacts to snapshots, none talks to the target."""
