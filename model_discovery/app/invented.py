"""The design page's panel for an invented unit: its lineage and the genome its code came from."""

from __future__ import annotations

import streamlit as st

from model_discovery.genome.display import genome_text, origin_line
from model_discovery.records import UnitSpec


def show_origin(spec: UnitSpec) -> None:
    """Lineage line and genome of ``spec`` (nothing for a catalogue or hand-written unit)."""
    if spec.origin is None:
        return
    st.markdown(f"*{origin_line(spec)}*")
    genome = genome_text(spec)
    if genome is not None:
        st.markdown("genome:")
        st.code(genome, language="json")
