"""Manifest of managed files, three-way merge and fleet upgrades."""
