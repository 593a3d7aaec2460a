"""docs/viewer.png: the viewer page in Debian's headless Chromium, after the demo bundle interpreted pydicom's
12-lead DICOM and answered one follow-up.

    python scripts/viewer_screenshot.py [--bundle bundles/demo] [--out docs/viewer.png]

Needs the serve and dev extras and Debian's chromium + chromium-driver (as tests/test_viewer.py).
"""
import argparse
import sys
from pathlib import Path

from pydicom.data import get_testdata_file
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.serve_bench import start_server  # noqa: E402

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1500")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("bundles/demo"))
    ap.add_argument("--out", type=Path, default=Path("docs/viewer.png"))
    a = ap.parse_args()
    proc, base = start_server(a.bundle)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(base + "/")
        driver.find_element(By.ID, "file").send_keys(get_testdata_file("waveform_ecg.dcm"))
        driver.find_element(By.ID, "interpret").click()
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('ecg-image'); return i && i.naturalWidth > 0") and
            "161 ms" in d.find_element(By.ID, "measurements").text)
        wait.until(lambda d: d.find_element(By.ID, "report").find_elements(By.TAG_NAME, "mark"))
        driver.find_element(By.ID, "followup").send_keys("Is the QT interval prolonged?")
        driver.find_element(By.ID, "ask").click()
        wait.until(lambda d: "ask" not in d.find_element(By.ID, "status").text.lower()
                   and d.find_element(By.ID, "answers").text.strip().count("\n") >= 1)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(a.out))
        print(f"wrote {a.out}")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
