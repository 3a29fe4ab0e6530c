-- fmd.json through cJSON: the layout of logs (Python's json.dumps(indent=n)),
-- key order kept, numbers in shortest round-trip form, integers vs floats
-- kept through a read and write, parse errors with file, line and column.
local fmd = require "fmd"
local json = require "fmd.json"

test("encode: layout, arrays vs objects, sorted keys or __order, escapes", function()
  expect_eq(json.encode({b = 1, a = {1, 2, {c = "x"}}, e = {}, o = {__order = {}}}),
    '{"a":[1,2,{"c":"x"}],"b":1,"e":[],"o":{}}')
  expect_eq(json.encode({z = 1, a = {2.5, "s"}, __order = {"z", "a", "missing"}}, 2),
    '{\n  "z": 1,\n  "a": [\n    2.5,\n    "s"\n  ]\n}')
  expect_eq(json.encode({x = {}, y = {k = {}}}, 4), '{\n    "x": [],\n    "y": {\n        "k": []\n    }\n}')
  expect_eq(json.encode('q"b\\s\n\t\r\b\f\1 é'), '"q\\"b\\\\s\\n\\t\\r\\b\\f\\u0001 é"')
  expect_eq(json.encode({1, 2, x = 3}), '{"1":1,"2":2,"x":3}')   -- mixed keys: an object, no value lost
  expect_eq(json.encode(json.null), "null")
  expect_eq(json.encode({true, false, json.null}), "[true,false,null]")
  expect_error(function() json.encode({f = print}) end, "json.encode: cannot encode a function")
  local cyc = {}; cyc.self = cyc
  expect_error(function() json.encode(cyc) end, "nested more than")
end)

test("numbers: integers plain, integral floats with .0, shortest round trip, NaN/inf as null", function()
  local cases = {{1, "1"}, {1.0, "1.0"}, {-0.0, "-0.0"}, {0.1, "0.1"}, {1 / 3, "0.3333333333333333"},
                 {1e300, "1e+300"}, {2 ^ 53, "9007199254740992"}, {1e15, "1e+15"}, {123.456, "123.456"},
                 {math.maxinteger, "9223372036854775807"}, {0 / 0, "null"}, {math.huge, "null"}}
  for _, c in ipairs(cases) do
    expect_eq(json.encode(c[1]), c[2], tostring(c[1]))
    expect_eq(json.format_number(c[1]), c[2])
  end
  for _, x in ipairs{0.1, 1 / 3, 2 / 3, 1e-7, 123456.789, math.pi, 5e-324, 1.7976931348623157e308} do
    expect(json.decode(json.encode(x)) == x, "round trip of " .. ("%.17g"):format(x))
  end
end)

test("decode: key order in __order, integers stay integers, read then write keeps the text", function()
  local text = '{\n    "b": 1,\n    "a": [\n        1,\n        2.0,\n        300.0,\n        1.5e-07,\n        null,\n'
    .. '        true,\n        "s\\u00e9\\n"\n    ],\n    "c": {}\n}'
  local v = json.decode(text)
  expect_eq(table.concat(v.__order, ","), "b,a,c")
  expect_eq(math.type(v.b), "integer"); expect_eq(math.type(v.a[2]), "float")
  expect(v.a[5] == json.null and v.a[6] == true and v.a[7] == "sé\n")
  -- 3e2 is a float (300.0); 1.5e-07 is written back as Python writes it
  local back = json.encode(json.decode('{"b": 1, "a": [1, 2.0, 3e2, 1.5e-07, null, true, "s\\u00e9\\n"], "c": {}}'), 4)
  expect_eq(back, (text:gsub("\\u00e9", "é")))
  expect_eq(json.decode("9223372036854775807"), math.maxinteger)
  expect_eq(math.type(json.decode("9223372036854775808")), "float")
  expect_eq(json.decode('"\\ud83d\\ude00"'), "\u{1F600}")
  local dup = json.decode('{"a": 1, "a": 2}')
  expect(dup.a == 2 and #dup.__order == 1)
end)

test("parse errors name the file, line and column (and byte), in one line", function()
  local cases = {
    {'{"a": 1,}', "f.json, line 1, column 9: invalid JSON, unexpected '}'"},
    {'{\n  "a": 1\n  "b": 2\n}', "f.json, line 3, column 3: invalid JSON, unexpected '\"'"},
    {'\n\n  {"k": tru}', "f.json, line 3, column 9: invalid JSON, unexpected 't' (at byte 11)"},
    {'{"a": 1} x', "f.json, line 1, column 10: invalid JSON, trailing characters"},
    {'', "f.json, line 1, column 1: invalid JSON, unexpected end of the text"},
  }
  for _, c in ipairs(cases) do
    local err = expect_error(function() json.decode(c[1], "f.json") end, c[2])
    expect(not err:find("\n"), err)
  end
  expect_error(function() json.decode("[1") end, "JSON, line 1, column")
  expect_error(function() json.decode(nil) end, "json.decode: expected a string, got nil")
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w")); f:write('[\n  1,\n  2,,\n]\n'); f:close()
  expect_error(function() json.read_file(tmp) end, tmp .. ", line 3, column 5: invalid JSON, unexpected ','")
  os.remove(tmp)
end)

test("write_file writes through path.tmp and a rename; an unencodable value leaves the old file", function()
  local tmp = os.tmpname()
  json.write_file(tmp, {a = 1})
  local f = assert(io.open(tmp)); local s = f:read("a"); f:close()
  expect_eq(s, '{\n    "a": 1\n}\n')
  expect_error(function() json.write_file(tmp, {a = print}) end, "cannot encode a function")
  f = assert(io.open(tmp)); expect_eq(f:read("a"), s); f:close()
  expect(not fmd.sys.is_file(tmp .. ".tmp"))
  os.remove(tmp)
end)
