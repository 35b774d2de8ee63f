"""The dogImages layout (train/ valid/ test/ of NNN.Breed/*.jpg) and a generated stand-in."""
