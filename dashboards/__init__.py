"""The Streamlit dashboard (app.py) and its loading, figure and export helpers."""
