"""The one base class of the errors the pack raises for bad user input (a file, folder or value that
cannot be used). Each stage has its own subclass; every message names the file and what is wrong."""


class MIMOInputError(ValueError):
    """Bad input to the pack: the message says what is wrong and how to fix it."""
