"""Built-in data: TinyWorld text, captioned shapes and digits images, and loaders for your own."""
