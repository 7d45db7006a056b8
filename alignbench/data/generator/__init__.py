"""The built-in synthetic scene generator: scenes with exact boxes, their captions and questions."""
