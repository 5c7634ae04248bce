"""PDF pages: the text layer, tables, and grounded questions."""
