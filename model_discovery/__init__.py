"""model_discovery: evolutionary discovery of language-model architectures."""
