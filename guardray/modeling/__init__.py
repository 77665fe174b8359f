"""Models: the embedded offline defaults, the GIP model (encoder + classification and MLM heads)
and the token limits of encoders."""
