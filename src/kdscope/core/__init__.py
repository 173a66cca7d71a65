"""The Subject every stage receives, the hooks and files it owns, and the numbers shared by every stage (statistics,
model profile); nothing here knows about compression, explainers, attacks or the audit."""
