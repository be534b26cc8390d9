"""Store clients shared by the stores."""
