"""The research questions ChatGPT raised, each measurable on TinyWorld: detecting generated text
(a sampling watermark, the model's own likelihood, a trained classifier), unlearning chosen
facts, and editing one fact without retraining."""
