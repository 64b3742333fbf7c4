"""Quality studies behind the README's tables (``reproduce.sh`` runs them all)."""
