"""Recipes shipped with masktwins (TOML files beside this module; installed as package data)."""
