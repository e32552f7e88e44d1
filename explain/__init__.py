"""Explanations of a NeuroFusion model's predictions as plain numpy / pandas results (no Streamlit)."""
