"""Corpus: one deduplicated table of prompts from every source (see corpus.py)."""

from anatomy.corpus.corpus import CORPUS_COLUMNS, IngestReport, ingest, load_corpus

__all__ = ["CORPUS_COLUMNS", "IngestReport", "ingest", "load_corpus"]
