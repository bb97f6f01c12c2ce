; Inno Setup script for Lectern on Windows (x64). NOT built or tested on the Linux machine this
; repository is developed on; see packaging/README.md.
;
; Input:  dist\lectern\ from `pyinstaller --noconfirm packaging\lectern.spec` (one folder with
;         lectern.exe, the console command, and lectern-app.exe, the windowed launcher).
; Build:  iscc /DAppVersion=0.1.0 packaging\windows\lectern.iss     (or packaging\windows\build-windows.ps1)
; Output: dist\lectern-<version>-windows-x64-setup.exe

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Root "..\.."

[Setup]
; AppId identifies the installation for upgrades and uninstall: never change it.
AppId={{1AF80A7D-3D2C-4F08-A3EF-C2040DBD70E0}
AppName=Lectern
AppVersion={#AppVersion}
AppVerName=Lectern {#AppVersion}
AppPublisher=Lectern developers
AppComments=Chat with local LLMs about long documents
DefaultDirName={autopf}\Lectern
DefaultGroupName=Lectern
DisableProgramGroupPage=yes
; per-user install without admin rights, or all users if the user chooses so
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=lectern-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\resources\icons\lectern.ico
UninstallDisplayIcon={app}\lectern-app.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the lectern command to PATH"; Flags: unchecked

[Files]
Source: "{#Root}\dist\lectern\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Lectern"; Filename: "{app}\lectern-app.exe"; Comment: "Chat with local LLMs"
Name: "{autodesktop}\Lectern"; Filename: "{app}\lectern-app.exe"; Tasks: desktopicon

[Registry]
; `lectern` from the Run dialog (Win+R) without touching PATH
Root: HKA; Subkey: "Software\Microsoft\Windows\CurrentVersion\App Paths\lectern.exe"; ValueType: string; ValueName: ""; ValueData: "{app}\lectern.exe"; Flags: uninsdeletekey
; PATH (user or machine, following the install mode) when the task is chosen
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: not IsAdminInstallMode and NeedsAddPath(ExpandConstant('{app}'))
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: IsAdminInstallMode and NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\lectern-app.exe"; Description: "{cm:LaunchProgram,Lectern}"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
  Root: Integer;
  Key: string;
begin
  if IsAdminInstallMode then begin
    Root := HKEY_LOCAL_MACHINE;
    Key := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';
  end else begin
    Root := HKEY_CURRENT_USER;
    Key := 'Environment';
  end;
  if not RegQueryStringValue(Root, Key, 'Path', Path) then begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
