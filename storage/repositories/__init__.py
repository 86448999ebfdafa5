"""Repository functions: each takes an AsyncSession; the caller owns the transaction."""
