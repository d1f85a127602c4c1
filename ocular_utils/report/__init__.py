"""Report: result records, the tables and comparisons the chapters show, and every figure."""
