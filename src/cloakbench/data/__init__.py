"""Dataset discovery, face alignment, train/test split, user roles and scraping."""
