"""Reverse ETL: deliver what the warehouse decided to email, SMS, ad and webhook destinations."""
