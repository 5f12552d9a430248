from llmpsych.cli import main

main()
