"""NeuroFusion Explorer: the Streamlit dashboard. Pages render what explain/ and neurofusion/ compute."""
