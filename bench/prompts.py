"""The benchmarks' prompts, in a module of their own: a benchmark's child process imports them
without importing the libraries of the system it does not time."""

PROMPTS = [
    "The weather today is",
    "In a shocking finding, scientists discovered a herd of unicorns living in a remote valley",
    "def fibonacci(n):",
    "Once upon a time",
    "The best way to learn a new language is to practise every day and",
    "Breaking news:",
    "She opened the door and saw",
    "Serverless functions start cold, so the first request of a new instance has to",
]
