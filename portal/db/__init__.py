"""Database layer: declarative base, portable types, engine and session factory, all tables."""
