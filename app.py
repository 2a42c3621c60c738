"""tumor-ai Space entry point: the app of ``tumor_ai.app.serve`` (``tumor-ai serve`` once installed).

python app.py                      # http://127.0.0.1:7860, models from models/
python app.py --share              # plus a public *.gradio.live link
python app.py --help               # every option
"""

from tumor_ai.app.serve import main

if __name__ == "__main__":
    main()
