"""Importers: convert other releases' formats into stores."""
